//! Rebuilds the crate when a migration file is added or removed: `embed_migrations!` reads
//! the `migrations/` directory at compile time, and cargo only tracks the files it includes.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
