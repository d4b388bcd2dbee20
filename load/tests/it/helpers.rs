//! Real HTTP servers on loopback for the tests, each on its own thread and runtime
//! (the load tool runs its own threads), stopped when the handle is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Parser as _;
use courser_load::cli::{Args, Done};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type Reply = Response<Full<Bytes>>;

pub struct Server {
    pub url: String,
    _stop: oneshot::Sender<()>,
}

/// Serves `handler` on 127.0.0.1:0 until the handle is dropped; each request carries the
/// client's address (a `SocketAddr` extension).
pub fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let accept = async {
                loop {
                    let (stream, peer) = listener.accept().await.unwrap();
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |mut req: Request<Incoming>| {
                            req.extensions_mut().insert(peer);
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stopped => {}
            }
        });
    });
    let addr = rx.recv().unwrap();
    Server {
        url: format!("http://{addr}"),
        _stop: stop,
    }
}

pub fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// A server that answers 200 with a small body at once.
pub fn trivial() -> Server {
    serve(|_req| async { reply(StatusCode::OK, "{\"ok\":true}") })
}

/// A fresh file path under the system's temp folder.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "courser-load-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs courser-load with these flags (plus quiet and a temp output folder).
pub fn load(url: &str, flags: &[&str]) -> Done {
    let out = temp_path("out");
    let mut argv = vec![
        "courser-load".to_string(),
        "--quiet".into(),
        "--url".into(),
        url.into(),
        "--out".into(),
        out.display().to_string(),
    ];
    argv.extend(flags.iter().map(|s| (*s).to_string()));
    Args::try_parse_from(argv).unwrap().execute().unwrap()
}
