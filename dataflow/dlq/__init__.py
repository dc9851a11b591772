"""The dead-letter review tool: `python -m dataflow dlq summary|show|export|replay`.

``reading`` reads the topic, ``records`` holds a dead letter and the filters,
``summary`` and ``rendering`` make the reports, ``export`` the JSON Lines,
``replay`` sends records back; ``cli`` wires them to the command line.
"""

from dataflow.dlq.cli import main

__all__ = ["main"]
