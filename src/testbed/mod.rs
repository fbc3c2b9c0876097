//! Private Dovecot instances for tests and the demo.
