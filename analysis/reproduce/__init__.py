"""The reproduction of the paper's claims: configuration, runs, statistics, verdicts, report and plots."""
