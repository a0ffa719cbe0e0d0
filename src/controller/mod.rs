//! Controllers: SpinApp reconciler and SpinAppExecutor finalizer.
