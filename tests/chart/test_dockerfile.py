"""The Dockerfile, read statically (no container engine here): multi-stage, slim, non-root.

What these tests cannot show is that the image builds; the README says how to build it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.chart.rendering import ROOT, RenderFn, one

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|cc|make|pip|build-essential|curl|wget)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def stages() -> list[Stage]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            words = arg.split()
            out.append(Stage(words[0], words[2] if len(words) > 2 else None))
        elif out:
            out[-1].instructions.append((op.upper(), arg.strip()))
    return out


def test_two_stages_and_the_final_one_only_copies() -> None:
    build, final = stages()
    assert build.name == "build" and final.name is None
    assert final.base == build.base  # same Python, so the copied virtualenv runs
    assert final.all("RUN") == []  # nothing installed or compiled in the final stage
    assert final.all("COPY") == ["--from=build /opt/eip-guard /opt/eip-guard"]
    for op, arg in final.instructions:
        assert not BUILD_TOOLS.search(arg) or op == "LABEL", (op, arg)


def test_final_stage_runs_as_the_chart_user(render: RenderFn) -> None:
    (user,) = stages()[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_the_image_runs_eip_guard_with_bytecode_prebuilt() -> None:
    build, final = stages()
    assert final.all("ENTRYPOINT") == ['["eip-guard"]']
    assert any("compileall" in run for run in build.all("RUN"))  # read-only root filesystem
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in final.all("ENV"))


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln[:1] not in "#"]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!app/"} <= set(lines)
    copied = {src for arg in stages()[0].all("COPY") for src in arg.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "app"}
