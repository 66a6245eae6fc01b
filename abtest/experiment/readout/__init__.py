"""The experiment readout: statistics (``analysis``), the decision rule and sentence (``decision``), and the HTML,
JSON and CSV files (``report``)."""
