//! Desired state: the pure function from a SpinApp (+ executor + referenced objects) to its children.
