"""Escalation's pure domain: endpoints and what they accept, delivery outcomes and retry times."""
