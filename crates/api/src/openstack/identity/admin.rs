//! Keystone admin resources: projects, users, roles, role assignments and the (single)
//! default domain. Writes need the admin role (the control layer enforces it).

use super::IdentityResult;
use super::auth::project_json;
use crate::AppState;
use crate::common::body::JsonBody;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use nimbus_control::identity::TokenInfo;
use nimbus_model::identity::{
    Context, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Project, Role, User,
};
use nimbus_model::{Error, ProjectId, RoleId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/identity/v3/projects",
            get(projects_list).post(project_create),
        )
        .route(
            "/identity/v3/projects/{id}",
            get(project_show)
                .patch(project_update)
                .delete(project_delete),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles/{role}",
            put(grant).head(check_grant).delete(revoke),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles",
            get(project_user_roles),
        )
        .route("/identity/v3/users", get(users_list).post(user_create))
        .route(
            "/identity/v3/users/{id}",
            get(user_show).patch(user_update).delete(user_delete),
        )
        .route("/identity/v3/users/{id}/projects", get(user_projects))
        .route("/identity/v3/roles", get(roles_list))
        .route("/identity/v3/roles/{id}", get(role_show))
        .route("/identity/v3/role_assignments", get(assignments))
        .route("/identity/v3/domains", get(domains_list))
        .route("/identity/v3/domains/{id}", get(domain_show))
}

/// Identity calls work with unscoped tokens too; policy needs a context, so an unscoped
/// caller acts with no roles.
fn ctx_of(info: &TokenInfo, ctx: Option<Extension<Context>>) -> Context {
    ctx.map(|c| c.0).unwrap_or_else(|| Context {
        user_id: info.user.id.clone(),
        user_name: info.user.name.clone(),
        project_id: ProjectId::default(),
        project_name: String::new(),
        roles: Vec::new(),
        request_id: nimbus_model::request_id(),
    })
}

fn list_links(state: &AppState, what: &str) -> Value {
    json!({"self": format!("{}/identity/v3/{what}", state.public_url()), "previous": null, "next": null})
}

fn query_value(q: &Option<String>, key: &str) -> Option<String> {
    crate::common::query_pairs(q.as_deref())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn user_json(state: &AppState, u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{}/identity/v3/users/{}", state.public_url(), u.id)},
    });
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    v
}

fn role_json(state: &AppState, r: &Role) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "domain_id": null,
        "description": null,
        "options": {},
        "links": {"self": format!("{}/identity/v3/roles/{}", state.public_url(), r.id)},
    })
}

fn domain_json(state: &AppState) -> Value {
    json!({
        "id": DEFAULT_DOMAIN_ID,
        "name": DEFAULT_DOMAIN_NAME,
        "description": "The default domain",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/identity/v3/domains/{DEFAULT_DOMAIN_ID}", state.public_url())},
    })
}

fn check_domain(domain: &Option<String>) -> Result<(), Error> {
    match domain.as_deref() {
        None | Some(DEFAULT_DOMAIN_ID) => Ok(()),
        Some(d) => Err(Error::invalid(format!(
            "Could not find domain: {d}. Nimbus has only the default domain."
        ))),
    }
}

async fn projects_list(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    RawQuery(q): RawQuery,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let name = query_value(&q, "name");
    let projects: Vec<Value> = state
        .control
        .projects_list(&ctx)
        .await?
        .iter()
        .filter(|p| name.as_ref().is_none_or(|n| *n == p.name))
        .map(|p| project_json(&state, p))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"projects": projects, "links": list_links(&state, "projects")}),
    ))
}

#[derive(Deserialize)]
struct ProjectBody {
    project: ProjectFields,
}

#[derive(Deserialize)]
struct ProjectFields {
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    parent_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    is_domain: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    tags: Option<Vec<String>>,
}

async fn project_create(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    JsonBody(body): JsonBody<ProjectBody>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let f = body.project;
    check_domain(&f.domain_id)?;
    let name = f
        .name
        .ok_or_else(|| Error::invalid("'name' is a required property"))?;
    let p = state
        .control
        .project_create(
            &ctx,
            &name,
            f.description.as_deref().unwrap_or(""),
            f.enabled.unwrap_or(true),
        )
        .await?;
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({"project": project_json(&state, &p)}),
    ))
}

async fn project_show(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let p = state
        .control
        .project_get(&ctx, &ProjectId::from(id))
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"project": project_json(&state, &p)}),
    ))
}

async fn project_update(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProjectBody>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let f = body.project;
    let p = state
        .control
        .project_update(&ctx, &ProjectId::from(id), f.name, f.description, f.enabled)
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"project": project_json(&state, &p)}),
    ))
}

async fn project_delete(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    state
        .control
        .project_delete(&ctx, &ProjectId::from(id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn grant(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path((project, user, role)): Path<(String, String, String)>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    state
        .control
        .role_assignment(
            &ctx,
            &ProjectId::from(project),
            &UserId::from(user),
            &RoleId::from(role),
            true,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn check_grant(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path((project, user, role)): Path<(String, String, String)>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let has = state
        .control
        .role_check(
            &ctx,
            &ProjectId::from(project),
            &UserId::from(user),
            &RoleId::from(role),
        )
        .await?;
    Ok(if has {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path((project, user, role)): Path<(String, String, String)>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    state
        .control
        .role_assignment(
            &ctx,
            &ProjectId::from(project),
            &UserId::from(user),
            &RoleId::from(role),
            false,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn project_user_roles(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path((project, user)): Path<(String, String)>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let all = state.control.roles_list(&ctx).await?;
    let assigned = state.control.role_assignments_list(&ctx).await?;
    let roles: Vec<Value> = all
        .iter()
        .filter(|r| {
            assigned
                .iter()
                .any(|a| a.project_id.0 == project && a.user_id.0 == user && a.role_id == r.id)
        })
        .map(|r| role_json(&state, r))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"roles": roles, "links": list_links(&state, "roles")}),
    ))
}

async fn users_list(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    RawQuery(q): RawQuery,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let name = query_value(&q, "name");
    let users: Vec<Value> = state
        .control
        .users_list(&ctx)
        .await?
        .iter()
        .filter(|u| name.as_ref().is_none_or(|n| *n == u.name))
        .map(|u| user_json(&state, u))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"users": users, "links": list_links(&state, "users")}),
    ))
}

#[derive(Deserialize)]
struct UserBody {
    user: UserFields,
}

#[derive(Deserialize)]
struct UserFields {
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    domain_id: Option<String>,
    #[serde(default)]
    default_project_id: Option<Option<String>>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

async fn user_create(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    JsonBody(body): JsonBody<UserBody>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let f = body.user;
    check_domain(&f.domain_id)?;
    let name = f
        .name
        .ok_or_else(|| Error::invalid("'name' is a required property"))?;
    let u = state
        .control
        .user_create(
            &ctx,
            &name,
            f.password.as_deref(),
            f.default_project_id.flatten().map(ProjectId::from),
            f.enabled.unwrap_or(true),
            f.email,
        )
        .await?;
    Ok(crate::common::json(
        StatusCode::CREATED,
        json!({"user": user_json(&state, &u)}),
    ))
}

async fn user_show(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let u = state.control.user_get(&ctx, &UserId::from(id)).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"user": user_json(&state, &u)}),
    ))
}

async fn user_update(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UserBody>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let f = body.user;
    let u = state
        .control
        .user_update(
            &ctx,
            &UserId::from(id),
            f.name,
            f.password,
            f.enabled,
            f.default_project_id.map(|p| p.map(ProjectId::from)),
        )
        .await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"user": user_json(&state, &u)}),
    ))
}

async fn user_delete(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    state.control.user_delete(&ctx, &UserId::from(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn user_projects(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    Path(id): Path<String>,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let user = UserId::from(id);
    if user != info.user.id && !ctx.is_admin() {
        return Err(Error::Forbidden(
            "You are not authorized to perform the requested action: identity:list_user_projects."
                .into(),
        )
        .into());
    }
    let projects: Vec<Value> = state
        .control
        .user_projects(&user)
        .await?
        .iter()
        .map(|p: &Project| project_json(&state, p))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"projects": projects, "links": list_links(&state, "projects")}),
    ))
}

async fn roles_list(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    RawQuery(q): RawQuery,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let name = query_value(&q, "name");
    let roles: Vec<Value> = state
        .control
        .roles_list(&ctx)
        .await?
        .iter()
        .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
        .map(|r| role_json(&state, r))
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"roles": roles, "links": list_links(&state, "roles")}),
    ))
}

async fn role_show(State(state): State<AppState>, Path(id): Path<String>) -> IdentityResult {
    let r = state.control.role_get(&RoleId::from(id)).await?;
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"role": role_json(&state, &r)}),
    ))
}

async fn assignments(
    State(state): State<AppState>,
    Extension(info): Extension<TokenInfo>,
    ctx: Option<Extension<Context>>,
    RawQuery(q): RawQuery,
) -> IdentityResult {
    let ctx = ctx_of(&info, ctx);
    let user = query_value(&q, "user.id");
    let project = query_value(&q, "scope.project.id");
    let role = query_value(&q, "role.id");
    let list: Vec<Value> = state
        .control
        .role_assignments_list(&ctx)
        .await?
        .iter()
        .filter(|a| user.as_ref().is_none_or(|u| *u == a.user_id.0))
        .filter(|a| project.as_ref().is_none_or(|p| *p == a.project_id.0))
        .filter(|a| role.as_ref().is_none_or(|r| *r == a.role_id.0))
        .map(|a| {
            json!({
                "role": {"id": a.role_id},
                "user": {"id": a.user_id},
                "scope": {"project": {"id": a.project_id}},
                "links": {"assignment": format!("{}/identity/v3/projects/{}/users/{}/roles/{}", state.public_url(), a.project_id, a.user_id, a.role_id)},
            })
        })
        .collect();
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"role_assignments": list, "links": list_links(&state, "role_assignments")}),
    ))
}

async fn domains_list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let name = query_value(&q, "name");
    let domains: Vec<Value> = if name.as_ref().is_none_or(|n| n == DEFAULT_DOMAIN_NAME) {
        vec![domain_json(&state)]
    } else {
        vec![]
    };
    crate::common::json(
        StatusCode::OK,
        json!({"domains": domains, "links": list_links(&state, "domains")}),
    )
}

async fn domain_show(State(state): State<AppState>, Path(id): Path<String>) -> IdentityResult {
    if id != DEFAULT_DOMAIN_ID && id != DEFAULT_DOMAIN_NAME {
        return Err(Error::not_found(format!("Could not find domain: {id}.")).into());
    }
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"domain": domain_json(&state)}),
    ))
}
