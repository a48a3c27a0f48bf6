//! The API token secret, which never reaches a log, an error or a process argument.
