//! Rules, macros and the scheduler (`src/rules`).
mod cases;
mod end_to_end;
