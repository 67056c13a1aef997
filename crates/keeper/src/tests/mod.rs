//! In-process tests of the whole keeper (a real one on a temp dir, clients over pipes).

mod mntr_load;
mod paused_sessions;
