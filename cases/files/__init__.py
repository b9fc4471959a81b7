"""Files on cases (issue 23): bytes in Django's storage, references in the workflow."""
