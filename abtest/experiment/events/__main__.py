"""``python -m abtest.experiment.events``: see ``abtest.experiment.events.cli``."""

from abtest.experiment.events.cli import main

raise SystemExit(main())
