"""Python for AWS Lambda: a provided.al2023 runtime layer (our Python, a `bootstrap` and
awslambdaric) and a dependencies layer from requirements.txt, each a zip within Lambda's limits,
with a JSON report of every package.

The dependency builder (deps.py) lets pip's resolver choose on this machine, sorts what it
downloaded into wheels compatible with the target, incompatible wheels and sdists, downloads a
compatible wheel of the same version for each incompatible one (manylinux tags up to the
runtime's glibc, tags.py), builds the sdists (again without a C compiler when that fails,
sdists.py) and installs the wheels into the layer's site-packages."""
