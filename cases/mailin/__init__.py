"""Mail in (issue 23): SMTP and IMAP doors, one pipeline."""
