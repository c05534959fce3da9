//! What a remote onion service sends sdwdate: the HTTP response head and its Date header.
//! `parse_date` on the raw bytes, and the real read loop (`transport::exchange`) on a peer
//! that sends the same bytes in pieces; both must agree, and errors must be Err.
#![no_main]

#[path = "../common/mock.rs"]
mod mock;

use libfuzzer_sys::fuzz_target;
use sdwdate::http;
use sdwdate::transport::{exchange, FetchError};

fuzz_target!(|data: &[u8]| {
    let (chunk, data) = mock::chunk_and_data(data);
    let direct = http::parse_date(data);
    if let Ok(t) = direct {
        assert!(t >= 0, "a time before 1970: {t}");
    }
    let end = http::head_end(data);
    if let Some(e) = end {
        assert!(e >= 4 && e <= data.len() && &data[e - 4..e] == b"\r\n\r\n");
    }
    let got = mock::runtime().block_on(exchange(
        mock::Peer::new(data, chunk),
        &mock::source(),
        &mock::FixedClock,
    ));
    match (end, got) {
        (Some(e), Ok(a)) => assert_eq!(Ok(a.remote), http::parse_date(&data[..e])),
        (Some(e), Err(FetchError::Http(err))) => {
            if let Err(d) = http::parse_date(&data[..e]) {
                assert_eq!(err, d);
            } else {
                // The read loop gave up on size before the head ended.
                assert_eq!(err, http::HttpError::Oversized);
            }
        }
        (Some(_), Err(e)) => panic!("complete head, but {e:?}"),
        (None, Ok(a)) => panic!("an answer {a:?} without a complete head"),
        (None, Err(_)) => {}
    }
});
