"""Running the TFLite models: loading, verification and the start-up self-test."""
