//! Rules, macros and the scheduler (`src/rules`).
mod end_to_end;
