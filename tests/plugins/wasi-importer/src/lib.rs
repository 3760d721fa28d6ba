//! A placement plugin that probes the WASI Ferry grants. `configure` uses no WASI. `place`
//! reads the annotation `probe` of the object and answers with an error whose message says
//! what WASI answered, so a test can compare instances:
//!
//! - `read` (default): wall clock, monotonic clock, random numbers, insecure seed and the
//!   environment, after writing a line to stdout;
//! - `files`: the preopened directories (opening a file needs one);
//! - `sockets`: a TCP socket and a name lookup;
//! - `sleep`: waits 1 ms on the monotonic clock;
//! - `spin`: waits for the monotonic clock to move, reading it in a loop;
//! - `grow`: fills 32 MiB of memory.

wit_bindgen::generate!({
    world: "ferry-test:wasi-importer/wasi-importer",
    path: ["../../../wit/v0.1.0", "wit"],
    generate_all,
});

use exports::ferry::sync::{config, placement};
use ferry::sync::types::{ObjectContext, PluginError, Target};
use wasi::sockets::network::IpAddressFamily;

struct WasiImporter;

impl config::Guest for WasiImporter {
    fn configure(_: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl placement::Guest for WasiImporter {
    fn place(_: ObjectContext, object: String, _: Vec<Target>) -> Result<Vec<String>, PluginError> {
        let probe = ["files", "sockets", "sleep", "spin", "grow"]
            .into_iter()
            .find(|p| object.contains(&format!("\"probe\":\"{p}\"")))
            .unwrap_or("read");
        Err(PluginError::Failed(match probe {
            "files" => files(),
            "sockets" => sockets(),
            "spin" => {
                let start = wasi::clocks::monotonic_clock::now();
                while wasi::clocks::monotonic_clock::now() == start {}
                "the clock moved".to_owned()
            }
            "grow" => {
                let filled = vec![1u8; 32 << 20];
                format!(
                    "filled {}",
                    filled.iter().map(|b| usize::from(*b)).sum::<usize>()
                )
            }
            "sleep" => {
                wasi::clocks::monotonic_clock::subscribe_duration(1_000_000).block();
                "slept".to_owned()
            }
            _ => read(),
        }))
    }
}

fn read() -> String {
    let out = wasi::cli::stdout::get_stdout();
    let written = out.blocking_write_and_flush(b"probing\n").is_ok();
    let wall = wasi::clocks::wall_clock::now();
    let monotonic = wasi::clocks::monotonic_clock::now();
    let random = wasi::random::random::get_random_u64();
    let bytes = wasi::random::random::get_random_bytes(4);
    let seed = wasi::random::insecure_seed::insecure_seed();
    let env = wasi::cli::environment::get_environment();
    let args = wasi::cli::environment::get_arguments();
    format!(
        "wall={}.{} monotonic={monotonic} random={random} bytes={bytes:?} seed={seed:?} env={} args={} stdout={written}",
        wall.seconds,
        wall.nanoseconds,
        env.len(),
        args.len()
    )
}

fn files() -> String {
    let dirs = wasi::filesystem::preopens::get_directories();
    format!("preopened={}", dirs.len())
}

fn sockets() -> String {
    let tcp = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map(drop)
        .map_err(|e| format!("{e:?}"));
    let network = wasi::sockets::instance_network::instance_network();
    let lookup = wasi::sockets::ip_name_lookup::resolve_addresses(&network, "example.com")
        .map(drop)
        .map_err(|e| format!("{e:?}"));
    format!("tcp={tcp:?} lookup={lookup:?}")
}

export!(WasiImporter);
