//! The HTTP API under `/api/v1` (see `docs/http-api.md`), described by an OpenAPI document generated
//! from these handlers with utoipa and served at `/api/openapi.json`.
//!
//! Every call but login is authenticated with a Bearer token and checked by role; request-level
//! checks (whose request, which state) are the domain's. Errors are `{"code","message"}` with a
//! machine-readable code, plus `fields` for validation errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::domain::consultation::{Action, OpinionText, WorkflowError};
use crate::domain::line::{LineMeasurement, MeasurementSource, NewLineMeasurement};
use crate::domain::validate::{Checker, FieldError};
use crate::domain::{
    AuditEvent, AuditQuery, ReferralDirection, RequestState, Role, Site, SiteKind, Specialty, User,
    UserView,
};
use crate::line_budget::{self, BudgetSource};
use crate::store::{RequestFilter, StoreError};
use crate::workflow::{
    MAX_OPINION_FIELD, MAX_REASON, NewRequest, RequestView, ServiceError, now_ms, truncate,
};
use crate::{AppState, AuthFailure, auth};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest line-measurement body.
pub const MAX_LINE_BODY_BYTES: usize = 16 * 1024;
/// Line measurements listed by default.
const DEFAULT_LINE_LIMIT: usize = 50;
/// Most line measurements listed at once.
const MAX_LINE_LIMIT: usize = 500;

type AppStateRef = Arc<AppState>;

/// An API error: status, machine-readable code, message, and the bad fields if any.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Invalid fields (validation errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

impl ApiError {
    /// An error without fields.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
        }
    }

    fn wrong_role(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_role",
            format!("your role may not {what}"),
        )
    }

    fn invalid(fields: Vec<FieldError>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: "some fields are invalid".into(),
            fields: Some(fields),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            StoreError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", "it exists already")
            }
            StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "someone else changed this request first; reload it",
            ),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; try again shortly",
                )
            }
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "stored data is corrupt");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => s.into(),
            ServiceError::Invalid(fields) => ApiError::invalid(fields),
            ServiceError::Workflow(w) => {
                let (status, code) = match &w {
                    WorkflowError::WrongRole { .. } => (StatusCode::FORBIDDEN, "wrong_role"),
                    WorkflowError::NotYours => (StatusCode::FORBIDDEN, "not_yours"),
                    WorkflowError::IllegalTransition { .. } => {
                        (StatusCode::CONFLICT, "illegal_transition")
                    }
                    WorkflowError::Invalid(_) => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_action")
                    }
                };
                ApiError::new(status, code, w.to_string())
            }
        }
    }
}

/// A JSON body whose rejections are API errors.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is over this endpoint's limit ({MAX_BODY_BYTES} bytes, {MAX_LINE_BODY_BYTES} for line measurements)"
                ),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_request",
                "send Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("not JSON: {}", truncate(&e.body_text(), 200)),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                truncate(&e.body_text(), 300),
            )),
        }
    }
}

/// Query parameters whose rejections are API errors.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    truncate(&e.body_text(), 300),
                )
            })
    }
}

/// The authenticated user of a call.
pub struct Caller(pub User);

impl FromRequestParts<AppStateRef> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |code, msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("missing_token", "send Authorization: Bearer TOKEN"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("missing_token", "send Authorization: Bearer TOKEN"))?;
        match state.authenticate(token.trim()).await {
            Ok(user) => Ok(Caller(user)),
            Err(AuthFailure::Expired) => Err(unauthorized(
                "expired_token",
                "the token has expired; log in again",
            )),
            Err(AuthFailure::Disabled) => {
                Err(unauthorized("account_disabled", "the account is disabled"))
            }
            Err(AuthFailure::Invalid) => Err(unauthorized(
                "invalid_token",
                "the token is not valid; log in again",
            )),
            Err(AuthFailure::Store(e)) => Err(e.into()),
        }
    }
}

fn address(peer: SocketAddr) -> Option<String> {
    Some(peer.ip().to_string())
}

fn require(user: &User, roles: &[Role], what: &str) -> Result<(), ApiError> {
    if roles.contains(&user.role) {
        Ok(())
    } else {
        Err(ApiError::wrong_role(what))
    }
}

/// All API routes, relative to `/api` (state applied by the caller).
pub fn router() -> Router<AppStateRef> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/v1/login", post(login))
        .route("/v1/me", get(me))
        .route("/v1/sites", get(list_sites))
        .route("/v1/sites/{id}", put(put_site))
        .route("/v1/sites/{id}/line-probe", post(line_probe))
        .route(
            "/v1/sites/{id}/line-measurements",
            post(add_line_measurement)
                .get(list_line_measurements)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_LINE_BODY_BYTES)),
        )
        .route(
            "/v1/line-measurements/latest",
            get(latest_line_measurements),
        )
        .route("/v1/specialties", get(list_specialties))
        .route("/v1/requests", post(create_request).get(list_requests))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/accept", post(accept))
        .route("/v1/requests/{id}/decline-offer", post(decline_offer))
        .route("/v1/requests/{id}/decline", post(decline))
        .route("/v1/requests/{id}/opinion", put(save_opinion))
        .route("/v1/requests/{id}/opinion/sign", post(sign_opinion))
        .route("/v1/requests/{id}/acknowledge", post(acknowledge))
        .route("/v1/requests/{id}/referrals", post(refer))
        .route(
            "/v1/availability",
            get(get_availability).put(put_availability),
        )
        .route("/v1/quality", get(quality))
        .route("/v1/audit", get(audit))
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{username}", axum::routing::patch(patch_user))
        .fallback(api_not_found)
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Telemed API", description = "Consultation workflow, accounts, audit and quality. See docs/http-api.md."),
    paths(
        login, me, list_sites, put_site, list_specialties, create_request, list_requests, get_request,
        cancel, accept, decline_offer, decline, save_opinion, sign_opinion, acknowledge, refer,
        get_availability, put_availability, quality, audit, list_users, create_user, patch_user,
        line_probe, add_line_measurement, list_line_measurements, latest_line_measurements
    ),
    components(schemas(ApiError, FieldError, RequestView, UserView, Site, Specialty, AuditEvent,
        LineMeasurement, MeasurementSource, NewLineMeasurement, LineProbeResponse, SiteLine, BudgetSource)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as pretty JSON (what `docs/openapi.json` holds).
pub fn openapi_document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// Login body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A token and who it is for.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token.
    pub token: String,
    /// Expiry (Unix ms).
    pub expires_at: i64,
    /// The user.
    pub user: UserView,
    /// The user's site.
    pub site: Option<Site>,
}

/// Log in with user name and password.
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginBody, tag = "auth",
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError), (status = 429, body = ApiError)))]
async fn login(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(body): Body<LoginBody>,
) -> Result<Json<LoginResponse>, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user name or password",
        )
    };
    // 256 characters of up to 4 bytes each (the password rule counts characters).
    if body.username.len() > 64 || body.password.len() > 1024 {
        return Err(bad());
    }
    if !state.login_throttle.allow(&body.username, now_ms()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed logins for this user; wait a few minutes",
        ));
    }
    let user = state.store.get_user(&body.username).await?;
    let hash = user.as_ref().map_or_else(
        || auth::dummy_hash().to_string(),
        |u| u.password_hash.clone(),
    );
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        known => {
            state.login_throttle.failed(&body.username, now_ms());
            // The audit names the account tried; what was typed for an unknown account is not kept
            // (it may be a password typed into the wrong field).
            let origin = crate::workflow::Origin {
                user: known.as_ref(),
                address: address(peer),
            };
            let detail = match &known {
                Some(u) => format!("user {:?}", u.username),
                None => "unknown user name".to_string(),
            };
            state
                .workflow
                .record(&origin, "login.failed", None, detail)
                .await?;
            return Err(bad());
        }
    };
    state.login_throttle.succeeded(&user.username);
    let origin = crate::workflow::Origin {
        user: Some(&user),
        address: address(peer),
    };
    state
        .workflow
        .record(&origin, "login.succeeded", None, String::new())
        .await?;
    let now = now_ms();
    let expires_at = now + crate::domain::queue::secs_to_ms(state.config.auth.token_ttl_secs);
    let token = state.tokens.sign(&auth::Claims {
        sub: user.username.clone(),
        generation: user.token_generation,
        iat: now,
        exp: expires_at,
    });
    let site = state.store.get_site(&user.site_id).await?;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user: UserView::from(&user),
        site,
    }))
}

/// The caller and their site.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The user.
    pub user: UserView,
    /// Their site.
    pub site: Option<Site>,
}

/// Who am I.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ApiError)))]
async fn me(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
) -> Result<Json<MeResponse>, ApiError> {
    let site = state.store.get_site(&user.site_id).await?;
    Ok(Json(MeResponse {
        user: UserView::from(&user),
        site,
    }))
}

/// All sites.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", security(("bearer" = [])),
    responses((status = 200, body = Vec<Site>), (status = 401, body = ApiError)))]
async fn list_sites(
    State(state): State<AppStateRef>,
    _c: Caller,
) -> Result<Json<Vec<Site>>, ApiError> {
    Ok(Json(state.store.list_sites().await?))
}

/// Create or change a site (operator).
#[utoipa::path(put, path = "/api/v1/sites/{id}", tag = "sites", security(("bearer" = [])), request_body = Site,
    params(("id" = String, Path, description = "Site id")),
    responses((status = 200, body = Site), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
async fn put_site(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(site): Body<Site>,
) -> Result<Json<Site>, ApiError> {
    require(&user, &[Role::Operator], "manage sites")?;
    let mut c = Checker::new();
    c.ident("id", &site.id, 32);
    if site.id != id {
        c.fail("id", "invalid_value", "the body's id differs from the path");
    }
    c.text("name", &site.name, 1, 128);
    c.text("region", &site.region, 0, 128);
    if site.line_capacity_kbps == 0 || site.line_capacity_kbps > 10_000_000 {
        c.fail(
            "line_capacity_kbps",
            "invalid_value",
            "line capacity is 1 to 10000000 kbit/s",
        );
    }
    c.finish().map_err(ApiError::invalid)?;
    state.store.put_site(&site).await?;
    // A changed capacity applies at once unless a measurement sets the budget.
    line_budget::refresh_site(state.store.as_ref(), state.relay.as_ref(), &site).await?;
    let origin = crate::workflow::Origin {
        user: Some(&user),
        address: address(peer),
    };
    state
        .workflow
        .record(&origin, "site.changed", None, site.id.clone())
        .await?;
    Ok(Json(site))
}

/// IT admins and operators may measure (and see the measurements of) any site, everyone else only
/// their own site's line.
fn may_measure(user: &User, site: &str) -> Result<(), ApiError> {
    if matches!(user.role, Role::ItAdmin | Role::Operator) || user.site_id == site {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_yours",
            "you may measure and see only your own site's line",
        ))
    }
}

/// The site `id`, or 404.
async fn existing_site(state: &AppState, id: &str) -> Result<Site, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such site");
    if id.len() > 64 {
        return Err(missing());
    }
    state.store.get_site(id).await?.ok_or_else(missing)
}

/// A one-use token for the line-probe endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineProbeResponse {
    /// The endpoint to measure against, `host:port` (UDP).
    pub server: String,
    /// The probe token (good for one measurement).
    pub token: String,
    /// Most bytes the endpoint sends (and accepts) for it.
    pub budget_bytes: u64,
    /// Expiry (Unix ms).
    pub expires_at: i64,
}

/// A probe token for measuring a site's line with `bandwidth-probe` (IT admin, operator: any site;
/// others: their own site). The body is ignored (send `{}`).
#[utoipa::path(post, path = "/api/v1/sites/{id}/line-probe", tag = "lines", security(("bearer" = [])),
    params(("id" = String, Path, description = "Site id")),
    responses((status = 200, body = LineProbeResponse), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn line_probe(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<LineProbeResponse>, ApiError> {
    may_measure(&user, &id)?;
    let site = existing_site(&state, &id).await?;
    let probe = state.probe.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "probe_disabled",
            "the line-probe endpoint is switched off on this server ([probe] enabled = false)",
        )
    })?;
    let grant = probe.grant(&site.id, now_ms()).map_err(|e| {
        tracing::error!(error = %e, "issuing a probe token failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    Ok(Json(LineProbeResponse {
        server: grant.server,
        token: grant.token,
        budget_bytes: grant.budget_bytes,
        expires_at: grant.expires_at,
    }))
}

/// Store a line measurement of a site (IT admin, operator: any site; others: their own site). The
/// site's line budget follows its downlink at once.
#[utoipa::path(post, path = "/api/v1/sites/{id}/line-measurements", tag = "lines", security(("bearer" = [])),
    request_body = NewLineMeasurement, params(("id" = String, Path, description = "Site id")),
    responses((status = 201, body = LineMeasurement), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 413, body = ApiError), (status = 422, body = ApiError)))]
async fn add_line_measurement(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(body): Body<NewLineMeasurement>,
) -> Result<(StatusCode, Json<LineMeasurement>), ApiError> {
    may_measure(&user, &id)?;
    let site = existing_site(&state, &id).await?;
    let checked = body.check(&site.id).map_err(ApiError::invalid)?;
    let m = checked.into_measurement(
        uuid::Uuid::new_v4().to_string(),
        site.id.clone(),
        now_ms(),
        user.username.clone(),
    );
    state.store.add_line_measurement(&m).await?;
    let budget = line_budget::choose(&site, Some(&m));
    state.relay.set_site_budget(&site.id, Some(budget.bps));
    let origin = crate::workflow::Origin {
        user: Some(&user),
        address: address(peer),
    };
    let detail = format!(
        "{}: down {:.0} kbit/s, up {:.0} kbit/s, rtt {:.1} ms, loss {:.1} % ({})",
        site.id,
        m.down_kbps,
        m.up_kbps,
        m.rtt_ms,
        m.loss_pct,
        m.source.as_str()
    );
    state
        .workflow
        .record(&origin, "line.measured", None, detail)
        .await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// How many line measurements to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LineListQuery {
    /// At most this many (1–500, default 50).
    pub limit: Option<usize>,
}

/// A site's line measurements, newest first (IT admin, operator: any site; others: their own).
#[utoipa::path(get, path = "/api/v1/sites/{id}/line-measurements", tag = "lines", security(("bearer" = [])),
    params(("id" = String, Path, description = "Site id"), LineListQuery),
    responses((status = 200, body = Vec<LineMeasurement>), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
async fn list_line_measurements(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Params(q): Params<LineListQuery>,
) -> Result<Json<Vec<LineMeasurement>>, ApiError> {
    may_measure(&user, &id)?;
    let limit = q.limit.unwrap_or(DEFAULT_LINE_LIMIT);
    if !(1..=MAX_LINE_LIMIT).contains(&limit) {
        let mut c = Checker::new();
        c.fail("limit", "invalid_value", "limit is 1 to 500");
        c.finish().map_err(ApiError::invalid)?;
    }
    let site = existing_site(&state, &id).await?;
    Ok(Json(
        state.store.list_line_measurements(&site.id, limit).await?,
    ))
}

/// A site's latest line measurement and the line budget the relay uses for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteLine {
    /// Site id.
    pub site: String,
    /// The latest measurement, if any.
    pub measurement: Option<LineMeasurement>,
    /// The relay's line budget for the site, kbit/s.
    pub budget_kbps: f64,
    /// `measured` (the latest measurement's `down_kbps`) or `configured` (`line_capacity_kbps`).
    pub budget_source: BudgetSource,
}

/// Every site's latest line measurement and budget (IT admin, operator; others get their own site
/// only).
#[utoipa::path(get, path = "/api/v1/line-measurements/latest", tag = "lines", security(("bearer" = [])),
    responses((status = 200, body = Vec<SiteLine>), (status = 401, body = ApiError)))]
async fn latest_line_measurements(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
) -> Result<Json<Vec<SiteLine>>, ApiError> {
    let mut out = Vec::new();
    for site in state.store.list_sites().await? {
        if may_measure(&user, &site.id).is_err() {
            continue;
        }
        let measurement = state.store.latest_line_measurement(&site.id).await?;
        let budget = line_budget::choose(&site, measurement.as_ref());
        out.push(SiteLine {
            site: site.id,
            measurement,
            budget_kbps: budget.kbps(),
            budget_source: budget.source,
        });
    }
    Ok(Json(out))
}

/// All specialties.
#[utoipa::path(get, path = "/api/v1/specialties", tag = "sites", security(("bearer" = [])),
    responses((status = 200, body = Vec<Specialty>), (status = 401, body = ApiError)))]
async fn list_specialties(State(state): State<AppStateRef>, _c: Caller) -> Json<Vec<Specialty>> {
    Json(state.workflow.specialties().to_vec())
}

/// Ask for a consultation (referring doctor).
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])), request_body = NewRequest,
    responses((status = 201, body = RequestView), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
async fn create_request(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Body(new): Body<NewRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    require(&user, &[Role::ReferringDoctor], "create a request")?;
    let view = state
        .workflow
        .create_request(&user, new, address(peer))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Which requests to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `mine` (default): the doctor's requests or the specialist's consultations; `queue`: the
    /// queue of the specialist's specialties, in queue order; `site`: signed consultation records
    /// of the caller's site (opinion written or closed).
    pub scope: Option<String>,
    /// Only these states, comma-separated.
    pub state: Option<String>,
}

/// List requests.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<RequestView>), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
async fn list_requests(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    require(
        &user,
        &[Role::ReferringDoctor, Role::Specialist],
        "see consultation requests",
    )?;
    let mut c = Checker::new();
    let mut states = None;
    if let Some(list) = q.state.as_deref().filter(|s| !s.is_empty()) {
        let mut parsed = vec![];
        for s in list.split(',') {
            match RequestState::parse(s.trim()) {
                Some(st) => parsed.push(st),
                None => c.fail(
                    "state",
                    "invalid_value",
                    format!("unknown state {:?}", truncate(s, 32)),
                ),
            }
        }
        states = Some(parsed);
    }
    let scope = q.scope.as_deref().unwrap_or("mine");
    if !matches!(scope, "mine" | "queue" | "site") {
        c.fail("scope", "invalid_value", "scope is mine, queue or site");
    }
    if scope == "queue" && user.role != Role::Specialist {
        c.fail("scope", "invalid_value", "only specialists see the queue");
    }
    c.finish().map_err(ApiError::invalid)?;
    let requests = if scope == "queue" {
        let queued = state
            .store
            .list_requests(&RequestFilter {
                states: Some(vec![RequestState::Queued]),
                ..RequestFilter::default()
            })
            .await?;
        let mut out = vec![];
        for sp in &user.specialties {
            out.extend(
                crate::domain::queue::ordered(&queued, sp)
                    .into_iter()
                    .cloned(),
            );
        }
        out.retain(|r| states.as_ref().is_none_or(|s| s.contains(&r.state)));
        out
    } else if scope == "site" {
        let signed = vec![RequestState::OpinionWritten, RequestState::Closed];
        let filter = RequestFilter {
            site: Some(user.site_id.clone()),
            states: Some(match states {
                Some(s) => s.into_iter().filter(|st| signed.contains(st)).collect(),
                None => signed,
            }),
            limit: 500,
            ..RequestFilter::default()
        };
        let mut out = state.store.list_requests(&filter).await?;
        out.retain(|r| crate::domain::consultation::may_read(r, &user));
        out
    } else {
        let mut filter = RequestFilter {
            states,
            limit: 500,
            ..RequestFilter::default()
        };
        if user.role == Role::ReferringDoctor {
            filter.requester = Some(user.username.clone());
        } else {
            filter.specialist = Some(user.username.clone());
        }
        state.store.list_requests(&filter).await?
    };
    Ok(Json(state.workflow.views(&requests).await?))
}

/// One request.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
async fn get_request(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let req = state.workflow.readable(&user, &id).await?;
    Ok(Json(state.workflow.view(&req).await?))
}

/// A reason for cancelling or declining.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (1–1000 characters).
    pub reason: String,
}

fn reason(r: &ReasonBody) -> Result<String, ApiError> {
    let mut c = Checker::new();
    c.text("reason", &r.reason, 1, MAX_REASON);
    c.finish().map_err(ApiError::invalid)?;
    Ok(r.reason.trim().to_string())
}

async fn act(
    state: &AppState,
    user: &User,
    id: &str,
    action: Action,
    peer: SocketAddr,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(
        state.workflow.act(user, id, action, address(peer)).await?,
    ))
}

/// Withdraw a request (its referring doctor).
#[utoipa::path(post, path = "/api/v1/requests/{id}/cancel", tag = "requests", security(("bearer" = [])), request_body = ReasonBody,
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
async fn cancel(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(body): Body<ReasonBody>,
) -> Result<Json<RequestView>, ApiError> {
    let reason = reason(&body)?;
    act(&state, &user, &id, Action::Cancel { reason }, peer).await
}

/// Accept a request (specialist): creates the room and tells both sides.
#[utoipa::path(post, path = "/api/v1/requests/{id}/accept", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
async fn accept(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    require(&user, &[Role::Specialist], "accept requests")?;
    let room = format!("consult-{}", truncate(&id, 40));
    act(&state, &user, &id, Action::Accept { room }, peer).await
}

/// Pass on an offer (the offered specialist): back to the head of the queue.
#[utoipa::path(post, path = "/api/v1/requests/{id}/decline-offer", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
async fn decline_offer(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &user, &id, Action::DeclineOffer, peer).await
}

/// Decline a request as unsuitable for teleconsultation (specialist).
#[utoipa::path(post, path = "/api/v1/requests/{id}/decline", tag = "requests", security(("bearer" = [])), request_body = ReasonBody,
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
async fn decline(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(body): Body<ReasonBody>,
) -> Result<Json<RequestView>, ApiError> {
    let reason = reason(&body)?;
    act(&state, &user, &id, Action::Decline { reason }, peer).await
}

/// Save the opinion draft (the request's specialist).
#[utoipa::path(put, path = "/api/v1/requests/{id}/opinion", tag = "opinions", security(("bearer" = [])), request_body = OpinionText,
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
async fn save_opinion(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(text): Body<OpinionText>,
) -> Result<Json<RequestView>, ApiError> {
    let mut c = Checker::new();
    for (field, value) in [
        ("findings", &text.findings),
        ("diagnosis", &text.diagnosis),
        ("recommendations", &text.recommendations),
        ("follow_up", &text.follow_up),
    ] {
        c.text(field, value, 0, MAX_OPINION_FIELD);
    }
    c.finish().map_err(ApiError::invalid)?;
    act(&state, &user, &id, Action::SaveOpinion(text), peer).await
}

/// Sign the opinion (the request's specialist): it is frozen with a SHA-256 digest.
#[utoipa::path(post, path = "/api/v1/requests/{id}/opinion/sign", tag = "opinions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
async fn sign_opinion(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &user, &id, Action::SignOpinion, peer).await
}

/// Acknowledge the signed opinion (the referring doctor): closes the request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/acknowledge", tag = "opinions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
async fn acknowledge(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &user, &id, Action::Acknowledge, peer).await
}

/// A referral proposal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralBody {
    /// `up` to the centre or `down` to the county.
    pub direction: ReferralDirection,
    /// Receiving site id.
    pub to_site: String,
    /// Why (1–1000 characters).
    pub reason: String,
}

/// Propose a referral (either side of the request).
#[utoipa::path(post, path = "/api/v1/requests/{id}/referrals", tag = "opinions", security(("bearer" = [])), request_body = ReferralBody,
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
async fn refer(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Body(body): Body<ReferralBody>,
) -> Result<Json<RequestView>, ApiError> {
    let mut c = Checker::new();
    c.text("reason", &body.reason, 1, MAX_REASON);
    c.ident("to_site", &body.to_site, 32);
    let site = if body.to_site.is_empty() {
        None
    } else {
        state.store.get_site(&body.to_site).await?
    };
    match (&site, body.direction) {
        (None, _) if !body.to_site.is_empty() => {
            c.fail("to_site", "unknown_reference", "no such site")
        }
        (Some(s), ReferralDirection::Up) if s.kind != SiteKind::SpecialistCentre => c.fail(
            "to_site",
            "invalid_value",
            "a referral up goes to a specialist centre",
        ),
        (Some(s), ReferralDirection::Down) if !s.kind.refers() => c.fail(
            "to_site",
            "invalid_value",
            "a referral down goes to a county hospital or township clinic",
        ),
        _ => {}
    }
    c.finish().map_err(ApiError::invalid)?;
    let action = Action::Refer {
        direction: body.direction,
        to_site: body.to_site,
        reason: body.reason.trim().to_string(),
    };
    act(&state, &user, &id, action, peer).await
}

/// A specialist's availability.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AvailabilityBody {
    /// Available for offers.
    pub available: bool,
}

/// The caller's availability (specialist).
#[utoipa::path(get, path = "/api/v1/availability", tag = "queue", security(("bearer" = [])),
    responses((status = 200, body = AvailabilityBody), (status = 403, body = ApiError)))]
async fn get_availability(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
) -> Result<Json<AvailabilityBody>, ApiError> {
    require(&user, &[Role::Specialist], "mark availability")?;
    let a = state.workflow.availability(&user.username).await?;
    Ok(Json(AvailabilityBody {
        available: a.is_some_and(|a| a.available),
    }))
}

/// Mark the caller available or not (specialist); marking available runs pairing.
#[utoipa::path(put, path = "/api/v1/availability", tag = "queue", security(("bearer" = [])), request_body = AvailabilityBody,
    responses((status = 200, body = AvailabilityBody), (status = 403, body = ApiError)))]
async fn put_availability(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(user): Caller,
    Body(body): Body<AvailabilityBody>,
) -> Result<Json<AvailabilityBody>, ApiError> {
    require(&user, &[Role::Specialist], "mark availability")?;
    let a = state
        .workflow
        .set_available(&user, body.available, address(peer))
        .await?;
    Ok(Json(AvailabilityBody {
        available: a.available,
    }))
}

/// Line and call quality: no clinical content.
#[derive(Debug, Serialize, ToSchema)]
pub struct Quality {
    /// Rooms open on the relay.
    pub rooms: usize,
    /// Participants in rooms.
    pub participants: usize,
    /// RTP packets received from publishers.
    pub rtp_packets_in: u64,
    /// RTP packets forwarded.
    pub rtp_packets_out: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Per site: line capacity and consultations in progress.
    pub sites: Vec<SiteQuality>,
}

/// One site's line and load.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteQuality {
    /// Site id.
    pub site_id: String,
    /// Site name.
    pub name: String,
    /// Configured line capacity (kbit/s).
    pub line_capacity_kbps: u32,
    /// Consultations accepted or in progress involving the site.
    pub active_consultations: usize,
    /// Requests waiting from the site.
    pub waiting_requests: usize,
}

/// Line and call quality (IT admin, operator).
#[utoipa::path(get, path = "/api/v1/quality", tag = "quality", security(("bearer" = [])),
    responses((status = 200, body = Quality), (status = 403, body = ApiError)))]
async fn quality(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
) -> Result<Json<Quality>, ApiError> {
    require(&user, &[Role::ItAdmin, Role::Operator], "see quality data")?;
    use RequestState as S;
    let active = state
        .store
        .list_requests(&RequestFilter {
            states: Some(vec![S::Queued, S::Offered, S::Accepted, S::InConsultation]),
            ..RequestFilter::default()
        })
        .await?;
    let mut per_site: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &active {
        if r.state.waiting() {
            per_site.entry(r.requester_site.clone()).or_default().1 += 1;
        } else {
            per_site.entry(r.requester_site.clone()).or_default().0 += 1;
            if let Some(c) = &r.centre {
                per_site.entry(c.clone()).or_default().0 += 1;
            }
        }
    }
    let sites = state
        .store
        .list_sites()
        .await?
        .into_iter()
        .map(|s| {
            let (active_consultations, waiting_requests) =
                per_site.get(&s.id).copied().unwrap_or_default();
            SiteQuality {
                site_id: s.id,
                name: s.name,
                line_capacity_kbps: s.line_capacity_kbps,
                active_consultations,
                waiting_requests,
            }
        })
        .collect();
    let stats = state.relay.stats();
    Ok(Json(Quality {
        rooms: stats.rooms,
        participants: stats.participants,
        rtp_packets_in: stats.rtp_in,
        rtp_packets_out: stats.rtp_out,
        keyframe_requests: stats.keyframe_requests,
        sites,
    }))
}

/// Audit query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// Only actions starting with this (e.g. `request.`, `room.`, `login.`).
    pub action: Option<String>,
    /// Only at or after (Unix ms).
    pub since: Option<i64>,
    /// Only events with a sequence number below this (paging).
    pub before: Option<u64>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<usize>,
}

/// The audit log, newest first (operator).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = Vec<AuditEvent>), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
async fn audit(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
    Params(p): Params<AuditParams>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    require(&user, &[Role::Operator], "read the audit log")?;
    let limit = p.limit.unwrap_or(100);
    let mut c = Checker::new();
    if !(1..=1000).contains(&limit) {
        c.fail("limit", "invalid_value", "limit is 1 to 1000");
    }
    for (field, v) in [
        ("actor", &p.actor),
        ("request_id", &p.request_id),
        ("action", &p.action),
    ] {
        if let Some(v) = v {
            c.text(field, v, 0, 128);
        }
    }
    c.finish().map_err(ApiError::invalid)?;
    let q = AuditQuery {
        actor: p.actor.filter(|s| !s.is_empty()),
        request_id: p.request_id.filter(|s| !s.is_empty()),
        action_prefix: p.action.filter(|s| !s.is_empty()),
        since: p.since,
        before_seq: p.before,
        limit,
    };
    Ok(Json(state.store.query_audit(&q).await?))
}

/// All accounts (operator).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = ApiError)))]
async fn list_users(
    State(state): State<AppStateRef>,
    Caller(user): Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    require(&user, &[Role::Operator], "manage accounts")?;
    Ok(Json(
        state
            .store
            .list_users()
            .await?
            .iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name (`a-z 0-9 . _ -`, 1–64).
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Site id.
    pub site_id: String,
    /// Specialties (specialists: at least one).
    #[serde(default)]
    pub specialties: Vec<String>,
    /// Initial password (8–256 characters), stored as an Argon2id hash.
    pub password: String,
}

/// Changes to an account; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Disable or enable (disabling revokes the user's tokens).
    pub disabled: Option<bool>,
    /// New password (revokes the user's tokens).
    pub password: Option<String>,
    /// New specialties.
    pub specialties: Option<Vec<String>>,
}

async fn check_account(
    state: &AppState,
    c: &mut Checker,
    role: Role,
    site_id: &str,
    specialties: &[String],
) -> Result<(), ApiError> {
    match state.store.get_site(site_id).await? {
        None => c.fail("site_id", "unknown_reference", "no such site"),
        Some(site) => {
            let fits = match role {
                Role::Specialist => site.kind == SiteKind::SpecialistCentre,
                Role::ReferringDoctor => site.kind.refers(),
                Role::ItAdmin | Role::Operator => true,
            };
            if !fits {
                c.fail(
                    "site_id",
                    "invalid_value",
                    "this role does not work at this kind of site",
                );
            }
        }
    }
    if role == Role::Specialist && specialties.is_empty() {
        c.fail(
            "specialties",
            "required",
            "a specialist needs at least one specialty",
        );
    }
    if role != Role::Specialist && !specialties.is_empty() {
        c.fail(
            "specialties",
            "invalid_value",
            "only specialists have specialties",
        );
    }
    for sp in specialties {
        if !state.workflow.specialties().iter().any(|s| s.id == *sp) {
            c.fail(
                "specialties",
                "unknown_reference",
                format!("unknown specialty {:?}", truncate(sp, 32)),
            );
        }
    }
    Ok(())
}

async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        })
}

/// Create an account (operator).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, body = UserView), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
async fn create_user(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(caller): Caller,
    Body(body): Body<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    require(&caller, &[Role::Operator], "manage accounts")?;
    let mut c = Checker::new();
    c.ident("username", &body.username, 64);
    c.text("display_name", &body.display_name, 1, 128);
    c.password("password", &body.password);
    check_account(&state, &mut c, body.role, &body.site_id, &body.specialties).await?;
    c.finish().map_err(ApiError::invalid)?;
    let user = User {
        username: body.username,
        display_name: body.display_name.trim().to_string(),
        role: body.role,
        site_id: body.site_id,
        specialties: body.specialties,
        password_hash: hash(body.password).await?,
        disabled: false,
        token_generation: 0,
    };
    state.store.create_user(&user).await?;
    let origin = crate::workflow::Origin {
        user: Some(&caller),
        address: address(peer),
    };
    state
        .workflow
        .record(&origin, "user.created", None, user.username.clone())
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// Change an account (operator).
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])), request_body = UserPatch,
    params(("username" = String, Path, description = "User name")),
    responses((status = 200, body = UserView), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
async fn patch_user(
    State(state): State<AppStateRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Caller(caller): Caller,
    Path(username): Path<String>,
    Body(patch): Body<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    require(&caller, &[Role::Operator], "manage accounts")?;
    let mut user = state
        .store
        .get_user(&username)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut c = Checker::new();
    if let Some(n) = &patch.display_name {
        c.text("display_name", n, 1, 128);
    }
    if let Some(p) = &patch.password {
        c.password("password", p);
    }
    if let Some(sp) = &patch.specialties {
        check_account(&state, &mut c, user.role, &user.site_id, sp).await?;
    }
    if patch.disabled == Some(true) && user.username == caller.username {
        c.fail(
            "disabled",
            "invalid_value",
            "you cannot disable your own account",
        );
    }
    c.finish().map_err(ApiError::invalid)?;
    let mut changes = vec![];
    if let Some(n) = patch.display_name {
        user.display_name = n.trim().to_string();
        changes.push("display_name");
    }
    if let Some(sp) = patch.specialties {
        user.specialties = sp;
        changes.push("specialties");
    }
    if let Some(d) = patch.disabled
        && d != user.disabled
    {
        user.disabled = d;
        user.token_generation += 1;
        changes.push(if d { "disabled" } else { "enabled" });
    }
    if let Some(p) = patch.password {
        user.password_hash = hash(p).await?;
        user.token_generation += 1;
        changes.push("password");
    }
    state.store.update_user(&user).await?;
    let origin = crate::workflow::Origin {
        user: Some(&caller),
        address: address(peer),
    };
    let detail = format!("{}: {}", user.username, changes.join(", "));
    state
        .workflow
        .record(&origin, "user.changed", None, detail)
        .await?;
    Ok(Json(UserView::from(&user)))
}

/// Failed-login throttle: after 10 failures for a user name within 5 minutes, further attempts are
/// refused until the window passes.
#[derive(Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, i64)>>,
}

const THROTTLE_WINDOW_MS: i64 = 5 * 60 * 1000;
const THROTTLE_MAX: u32 = 10;

impl LoginThrottle {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, i64)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login attempt for `username` may proceed.
    pub fn allow(&self, username: &str, now: i64) -> bool {
        let mut map = self.map();
        map.retain(|_, (_, start)| now - *start < THROTTLE_WINDOW_MS);
        map.get(username).is_none_or(|(n, _)| *n < THROTTLE_MAX)
    }

    /// Count a failure.
    pub fn failed(&self, username: &str, now: i64) {
        let mut map = self.map();
        // Bound memory under a flood of made-up user names.
        if map.len() > 100_000 {
            map.clear();
        }
        map.entry(truncate(username, 64)).or_insert((0, now)).0 += 1;
    }

    /// Forget failures after a successful login.
    pub fn succeeded(&self, username: &str) {
        self.map().remove(username);
    }
}
