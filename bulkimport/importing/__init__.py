"""Importing users from a CSV file: reading, validation, staging, and applying."""
