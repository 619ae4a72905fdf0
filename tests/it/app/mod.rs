//! The whole program: the real `postern` binary, its CLI, start, restart and shutdown.
mod data_dir_permissions;
mod end_to_end;
mod smoke;
