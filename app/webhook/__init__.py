"""The HTTPS admission webhook: the edge that translates AdmissionReviews to verdicts."""
