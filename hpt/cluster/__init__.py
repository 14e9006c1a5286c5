"""The Ray a tuning job runs on: started or joined (session.py), and noticing it is gone
(watch.py)."""
