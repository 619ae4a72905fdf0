//! The store (`src/store`): durability after a crash, one serving process per database.
mod crash;
mod serve_lock;
