"""What stands in for Azure on one machine: the local Functions host and, later, the Durable replay engine, the ACS
emulator and the channel simulators.

`python -m local` (what `make run` starts) brings the system up offline. Nothing in production imports this
package; the same `function_app.py` deploys unchanged to Azure, where the real Functions host takes over.
"""
