"""The standard checks, registered through the `toilbox` entry-point group.

Each check's module registers its own task type, and the package's metadata declares
which module that is (the `toilbox.task_types` entry-point group in pyproject.toml), so
`toilbox run` of one check imports that check only.  Importing this package must stay
cheap (it happens on every start-up); a check that needs a heavy library (httpx,
cryptography, psutil) imports it inside its task function.
"""
