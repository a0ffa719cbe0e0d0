//! Admission webhooks: HTTPS server, AdmissionReview handling, routes and webhook configurations.
