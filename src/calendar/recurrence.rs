//! recurrence
