"""CDK constructs of the build farm's AWS stack, one module per concern (see stack.py)."""
