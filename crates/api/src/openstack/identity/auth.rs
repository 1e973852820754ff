//! `/identity`, `/identity/v3` and `/identity/v3/auth/*`: discovery and tokens.

use super::{AuthToken, IdentityError, IdentityResult, catalog::catalog, keystone_time};
use crate::AppState;
use crate::common::body::JsonBody;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nimbus_control::identity::{DomainRef, IssuedToken, ProjectRef, TokenInfo, UserRef};
use nimbus_model::identity::{DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, ROLE_ADMIN};
use nimbus_model::{Error, ProjectId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

fn v3_entry(state: &AppState) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", state.public_url())}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// `GET /identity`: 300 Multiple Choices, as Keystone answers at its root.
pub async fn versions(State(state): State<AppState>) -> Response {
    crate::common::json(
        StatusCode::MULTIPLE_CHOICES,
        json!({"versions": {"values": [v3_entry(&state)]}}),
    )
}

pub async fn version_v3(State(state): State<AppState>) -> Response {
    crate::common::json(StatusCode::OK, json!({"version": v3_entry(&state)}))
}

#[derive(Deserialize)]
pub struct AuthBody {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: Identity,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: PasswordUser,
}

#[derive(Deserialize)]
struct PasswordUser {
    id: Option<String>,
    name: Option<String>,
    domain: Option<DomainBody>,
    password: String,
}

#[derive(Deserialize)]
struct DomainBody {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct TokenMethod {
    id: String,
}

fn domain_ref(d: Option<DomainBody>, what: &str) -> Result<DomainRef, Error> {
    match d {
        Some(DomainBody { id: Some(id), .. }) => Ok(DomainRef::Id(id)),
        Some(DomainBody { name: Some(n), .. }) => Ok(DomainRef::Name(n)),
        _ => Err(Error::invalid(format!(
            "Expecting to find domain in {what}. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."
        ))),
    }
}

/// Parse `auth.scope`: a project (by id, or name + domain), `"unscoped"`, or absent.
fn project_scope(scope: Option<Value>) -> Result<Option<ProjectRef>, Error> {
    let Some(scope) = scope else { return Ok(None) };
    if scope.as_str() == Some("unscoped") {
        return Ok(None);
    }
    let Some(project) = scope.get("project") else {
        if scope.get("domain").is_some() || scope.get("system").is_some() {
            return Err(Error::Unauthenticated(
                "Domain and system scoped tokens are not supported by Nimbus; scope to a project."
                    .into(),
            ));
        }
        return Err(Error::invalid(
            "Invalid input for field 'scope': expected a project.",
        ));
    };
    if let Some(id) = project.get("id").and_then(Value::as_str) {
        return Ok(Some(ProjectRef::Id(ProjectId::from(id))));
    }
    let name = project.get("name").and_then(Value::as_str).ok_or_else(|| {
        Error::invalid("Invalid input for field 'scope.project': expected id or name.")
    })?;
    let domain: Option<DomainBody> = project
        .get("domain")
        .cloned()
        .map(crate::common::body::from_value)
        .transpose()?;
    Ok(Some(ProjectRef::Name {
        name: name.to_owned(),
        domain: domain_ref(domain, "project")?,
    }))
}

/// The token body Keystone returns.
pub fn token_body(state: &AppState, info: &TokenInfo) -> Value {
    let domain = json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME});
    let mut token = json!({
        "methods": info.methods,
        "user": {"domain": domain, "id": info.user.id, "name": info.user.name, "password_expires_at": null},
        "audit_ids": [info.audit_id],
        "expires_at": keystone_time(&info.expires_at),
        "issued_at": keystone_time(&info.issued_at),
    });
    if let Some(p) = &info.project {
        token["project"] = json!({"domain": domain, "id": p.id, "name": p.name});
        token["is_domain"] = json!(false);
        token["roles"] = json!(
            info.roles
                .iter()
                .map(|r| json!({"id": r.id, "name": r.name}))
                .collect::<Vec<_>>()
        );
        token["catalog"] = catalog(state.public_url(), &state.control.config().region);
    }
    json!({"token": token})
}

fn issued(state: &AppState, t: IssuedToken) -> Response {
    let mut resp = crate::common::json(StatusCode::CREATED, token_body(state, &t.info));
    if let Ok(v) = HeaderValue::from_str(&t.secret) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

/// `POST /v3/auth/tokens`.
pub async fn issue(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AuthBody>,
) -> IdentityResult {
    let auth = body.auth;
    let scope = project_scope(auth.scope)?;
    let c = &state.control;
    if auth.identity.methods.iter().any(|m| m == "password") {
        let pw = auth
            .identity
            .password
            .ok_or_else(|| Error::invalid("Expecting to find password in identity."))?;
        let user = match (pw.user.id, pw.user.name) {
            (Some(id), _) => UserRef::Id(UserId::from(id)),
            (None, Some(name)) => UserRef::Name {
                name,
                domain: domain_ref(pw.user.domain, "user")?,
            },
            (None, None) => {
                return Err(Error::invalid("Expecting to find id or name in user.").into());
            }
        };
        return Ok(issued(
            &state,
            c.authenticate_password(&user, &pw.user.password, scope.as_ref())
                .await?,
        ));
    }
    if auth.identity.methods.iter().any(|m| m == "token") {
        let t = auth
            .identity
            .token
            .ok_or_else(|| Error::invalid("Expecting to find token in identity."))?;
        return Ok(issued(
            &state,
            c.authenticate_token(&t.id, scope.as_ref()).await?,
        ));
    }
    Err(IdentityError(Error::Unauthenticated(format!(
        "Attempted to authenticate with an unsupported method: {:?}",
        auth.identity.methods
    ))))
}

fn subject(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid("Expecting to find X-Subject-Token in headers."))
}

/// Keystone's `identity:validate_token` / `check_token` / `revoke_token` policy: the token's
/// own user (`rule:token_subject`) or an admin may look at or revoke it; anyone else gets
/// 403, so a token cannot be used to probe other users' tokens.
async fn subject_info(
    state: &AppState,
    caller: &TokenInfo,
    headers: &HeaderMap,
    rule: &str,
) -> Result<(String, TokenInfo), Error> {
    let token = subject(headers)?;
    let info = state
        .control
        .validate_token(&token)
        .await
        .map_err(|_| Error::not_found(format!("Could not find token: {token}")))?;
    let admin = caller.roles.iter().any(|r| r.name == ROLE_ADMIN);
    if info.user.id != caller.user.id && !admin {
        return Err(Error::Forbidden(format!(
            "You are not authorized to perform the requested action: identity:{rule}."
        )));
    }
    Ok((token, info))
}

#[derive(Deserialize)]
pub struct ValidateQuery {
    nocatalog: Option<String>,
}

/// `GET /v3/auth/tokens`: validate the token named by `X-Subject-Token`. `?nocatalog` (any
/// value) leaves the catalog out, as Keystone does.
pub async fn validate(
    State(state): State<AppState>,
    Extension(caller): Extension<TokenInfo>,
    Query(q): Query<ValidateQuery>,
    headers: HeaderMap,
) -> IdentityResult {
    let (token, info) = subject_info(&state, &caller, &headers, "validate_token").await?;
    let mut body = token_body(&state, &info);
    if q.nocatalog.is_some()
        && let Some(t) = body["token"].as_object_mut()
    {
        t.remove("catalog");
    }
    let mut resp = crate::common::json(StatusCode::OK, body);
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

/// `HEAD /v3/auth/tokens`.
pub async fn check(
    State(state): State<AppState>,
    Extension(caller): Extension<TokenInfo>,
    headers: HeaderMap,
) -> IdentityResult {
    subject_info(&state, &caller, &headers, "check_token").await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v3/auth/tokens`.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<TokenInfo>,
    headers: HeaderMap,
) -> IdentityResult {
    let (token, _) = subject_info(&state, &caller, &headers, "revoke_token").await?;
    state.control.revoke_token(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn project_json(state: &AppState, p: &nimbus_model::identity::Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "parent_id": p.domain_id,
        "is_domain": false,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/identity/v3/projects/{}", state.public_url(), p.id)},
    })
}

/// `GET /v3/auth/projects`: projects the caller may scope to.
pub async fn auth_projects(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
) -> IdentityResult {
    let projects = state.control.user_projects(&info.user.id).await?;
    let list: Vec<Value> = projects.iter().map(|p| project_json(&state, p)).collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"projects": list, "links": {"self": format!("{}/identity/v3/auth/projects", state.public_url()), "previous": null, "next": null}}),
    ))
}

/// `GET /v3/auth/catalog`.
pub async fn auth_catalog(
    State(state): State<AppState>,
    Extension(_t): Extension<AuthToken>,
) -> IdentityResult {
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"catalog": catalog(state.public_url(), &state.control.config().region), "links": {"self": format!("{}/identity/v3/auth/catalog", state.public_url()), "previous": null, "next": null}}),
    ))
}
