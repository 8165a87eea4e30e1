//! Assembles the actix-web app (routes, middleware, OpenAI-shaped 404/405)
//! over a [`Backend`], and runs the HTTP server. The top of `src/api/`'s
//! imports: it uses every handler and nothing imports it back (the state
//! handlers share, [`ApiState`], lives in `state.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App, HttpServer};

use super::config::ServerConfig;
use super::state::{method_not_allowed, not_found, ApiState};
use super::{completions, misc, static_files, ws};
use crate::backend::Backend;

/// One resource per path, answering other methods with a JSON 405.
fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path.to_string())
        .route(route)
        .default_service(web::to(method_not_allowed))
}

/// The public routes: the chat page (`/` and each of its files, by exact
/// name) and the health probe. Nothing else is public: any path these do not
/// match, known or not, falls through to [`protected`], behind the key.
///
/// The page's files are registered one by one, from what `web_dir` holds at
/// start-up, rather than as a `/{name}` pattern, so that no other one-segment
/// path (`/metrics`, `/TOKENIZE`) can be mistaken for a public file.
pub fn public(cfg: &mut web::ServiceConfig, page_files: &[String]) {
    cfg.service(resource("/health", web::get().to(misc::health)));
    // Only the page's files are gzipped: compressing an SSE body would
    // hold its events back in the encoder.
    cfg.service(
        resource("/", web::get().to(static_files::index)).wrap(middleware::Compress::default()),
    );
    for name in page_files {
        let file = name.clone();
        cfg.service(
            resource(
                &format!("/{name}"),
                web::get()
                    .to(move |state: web::Data<ApiState>| static_files::file(state, file.clone())),
            )
            .wrap(middleware::Compress::default()),
        );
    }
}

/// The API proper: every route that needs the key when keys are set.
pub fn protected(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(
        "/v1/chat/completions",
        web::post().to(completions::chat_completions),
    ))
    .service(resource(
        "/v1/completions",
        web::post().to(completions::completions),
    ))
    .service(resource("/tokenize", web::post().to(misc::tokenize)))
    .service(resource("/detokenize", web::post().to(misc::detokenize)))
    .service(resource("/v1/models", web::get().to(misc::models)))
    // Model ids may hold a `/` (`org/name`), as the SDK sends them.
    .service(resource("/v1/models/{id:.+}", web::get().to(misc::model)))
    .service(resource("/metrics", web::get().to(misc::metrics)))
    .service(resource("/v1/ws", web::get().to(ws::websocket)));
}

/// The whole app: state, CORS, request logs, the public routes, and every
/// other path (the API and the JSON 404 alike) inside one scope that the key
/// check wraps.
///
/// Why a scope: actix routes on the percent-decoded path, so a check that
/// reads the raw path (`/%761/models`) can disagree with the route that
/// runs. Here the key check runs exactly when the router did not pick a
/// public route, whatever the spelling of the path: deny by default.
pub fn app(
    state: ApiState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let page_files = static_files::page_files(&state.config.web_dir);
    App::new()
        .app_data(web::Data::new(state))
        .configure(|cfg| public(cfg, &page_files))
        .service(
            web::scope("")
                .configure(protected)
                .default_service(web::to(not_found))
                .wrap(middleware::from_fn(super::middleware::auth)),
        )
        // The last `wrap` runs first: log, then CORS (so preflights skip
        // auth and 401s carry CORS headers).
        .wrap(middleware::from_fn(super::middleware::cors))
        .wrap(middleware::from_fn(super::middleware::log_requests))
}

/// Binds `config.host:config.port` and returns the server (not yet
/// awaited) and the addresses it listens on (port 0 picks a free one).
pub fn bind(
    config: ServerConfig,
    backend: Arc<dyn Backend>,
) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let addr = (config.host.clone(), config.port);
    let state = ApiState::new(config, backend);
    let server = HttpServer::new(move || app(state.clone()))
        // A client that closes its socket is gone: drop its stream (which
        // cancels the request) instead of waiting for a write to fail.
        .h1_allow_half_closed(false)
        // Streams are cut after this long on shutdown.
        .shutdown_timeout(5)
        .bind(addr)?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Serves until the process is stopped (Ctrl-C stops it gracefully).
pub async fn run_server(config: ServerConfig, backend: Arc<dyn Backend>) -> std::io::Result<()> {
    let card = backend.model();
    let (server, addrs) = bind(config, backend)?;
    for addr in &addrs {
        tracing::info!("serving `{}` on http://{addr}", card.id);
    }
    server.await
}
