"""For whoever runs the shop: the one table of jobs, the scheduler, logs, metrics, backups, alerts, retention."""
