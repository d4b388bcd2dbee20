//! A trivial HTTP/1 server for measuring the load tool itself: answers every request
//! with the same small JSON body, keep-alive, on a single-threaded runtime (so
//! `taskset` can give it exactly one core).
//!
//! `cargo run --release -p courser-load --example trivial_server -- 127.0.0.1:18100 [BODY_BYTES]`

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18100".into());
    let size: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let mut text = String::from(r#"{"ok":true,"pad":""#);
    while text.len() + 2 < size {
        text.push('x');
    }
    text.push_str("\"}");
    let body = Bytes::from(text);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("trivial_server on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut resp = Response::new(Full::new(body));
                        resp.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
