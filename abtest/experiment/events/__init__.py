"""The application's side of the experiment: what it showed (impressions) and what happened next (outcomes).

The router records its decisions itself (``ab_router.decision_log``); the application writes its events with
:func:`write_impressions` / :func:`write_outcomes`, or from a file with the CLI, into the same sink (a directory
or a SQLAlchemy URL) in the layout of ``ab_router.records``:

    python -m abtest.experiment.events impressions --sink records/ --input impressions.csv
    python -m abtest.experiment.events outcomes --sink sqlite:///records.db --input clicks.jsonl --event click

Modules: ``validation`` (types, required fields, event names, content-made event ids), ``writer`` (idempotent
appends), ``cli`` (the command line). The format: docs/records.md.
"""

from abtest.experiment.events.validation import RecordError, content_event_id
from abtest.experiment.events.writer import WriteResult, write_impressions, write_outcomes

__all__ = ["RecordError", "WriteResult", "content_event_id", "write_impressions", "write_outcomes"]
