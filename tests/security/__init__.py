"""Attack tests: model output is untrusted; each test checks the attack had no effect."""
