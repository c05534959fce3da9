//! The SOCKS5 replies sdwdate reads from its proxy (the system Tor, or the Whonix gateway),
//! through the exact call sdwdate makes (tokio-socks' `connect_with_password_and_socket`,
//! target the onion by name, the isolation username), followed by the HTTP exchange on the
//! stream it yields, as `transport::socks` does. sdwdate has no SOCKS parser of its own.
#![no_main]

#[path = "../common/mock.rs"]
mod mock;

use libfuzzer_sys::fuzz_target;
use tokio_socks::tcp::Socks5Stream;

fuzz_target!(|data: &[u8]| {
    let (chunk, data) = mock::chunk_and_data(data);
    let src = mock::source();
    mock::runtime().block_on(async {
        let peer = mock::Peer::new(data, chunk);
        let Ok(stream) = Socks5Stream::connect_with_password_and_socket(
            peer,
            (src.host.as_str(), src.port),
            "sdwdate-fuzz-isolation-0001",
            "sdwdate",
        )
        .await
        else {
            return;
        };
        let _ = sdwdate::transport::exchange(stream, &src, &mock::FixedClock).await;
    });
});
