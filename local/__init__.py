"""What stands in for Azure on one machine: the local Functions host and, later, the Durable replay engine, the ACS
emulator and the channel simulators.

`python -m local` (what `make run` starts) brings the system up offline. Nothing in production imports this
package; the same `function_app.py` deploys unchanged to Azure, where the real Functions host takes over.
"""


class PortInUse(Exception):
    """A local service's port is taken; the message says which setting moves it.

    Defined here rather than in `__main__`: under `python -m local` that module runs as `__main__`, so importing
    `local.__main__` from a service would load a second copy whose PortInUse `main()` does not catch.
    """
