"""The rate sweep: one lm_eval run per rate (``run``), and the table and chart built from them (``report``)."""
