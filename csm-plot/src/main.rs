//! `csm-plot`: SVG charts from the Parquet tree `csm run` writes.

fn main() {
    std::process::exit(csm_plot::main_with_args(std::env::args_os()));
}
