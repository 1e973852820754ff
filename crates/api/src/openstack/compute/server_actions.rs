//! `POST /servers/{id}/action`: the body's single key names the action (Nova
//! `@wsgi.action`), each with its own body schema and status.

use super::fault::ComputeResult;
use super::servers::{Flag, PersonalityFile, ShowOpts, StrOrInt, id_from_href, server_response};
use super::{Api, server_id};
use crate::AppState;
use crate::common::body::{JsonBody, from_value};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nimbus_control::servers::{ActionOutcome, Rebuild, ServerAction};
use nimbus_model::server::Personality;
use nimbus_model::state::VmState;
use nimbus_model::{Error, FlavorId, ImageId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new().route("/compute/v2.1/servers/{id}/action", post(action))
}

/// Actions Nova has that Nimbus does not implement (answered 501, not "no such action").
const UNSUPPORTED: &[&str] = &[
    "createBackup",
    "shelve",
    "shelveOffload",
    "unshelve",
    "rescue",
    "unrescue",
    "migrate",
    "os-migrateLive",
    "evacuate",
    "trigger_crash_dump",
    "addSecurityGroup",
    "removeSecurityGroup",
    "injectNetworkInfo",
    "os-getSPICEConsole",
    "os-getSerialConsole",
    "os-getRDPConsole",
    "os-getMKSConsole",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootBody {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResizeBody {
    #[serde(rename = "flavorRef")]
    flavor_ref: StrOrInt,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    #[allow(dead_code)]
    disk_config: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    #[serde(rename = "imageRef")]
    image_ref: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "adminPass", default)]
    admin_pass: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    preserve_ephemeral: Option<Flag>,
    #[serde(rename = "OS-DCF:diskConfig", default)]
    disk_config: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    #[allow(dead_code)]
    access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6", default)]
    #[allow(dead_code)]
    access_ipv6: Option<String>,
    #[serde(default)]
    personality: Option<Vec<PersonalityFile>>,
    #[serde(default)]
    description: Option<Option<String>>,
    #[serde(default)]
    key_name: Option<Option<String>>,
    #[serde(default)]
    user_data: Option<Option<String>>,
    #[serde(default)]
    trusted_image_certificates: Option<Value>,
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateImageBody {
    name: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleBody {
    #[serde(default)]
    length: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    #[serde(rename = "adminPass")]
    admin_pass: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    #[serde(default)]
    locked_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetStateBody {
    state: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VncBody {
    #[serde(rename = "type")]
    kind: String,
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// An action whose body must be `null` (or `{}`).
fn no_body(name: &str, v: &Value) -> Result<(), Error> {
    match v {
        Value::Null => Ok(()),
        Value::Object(o) if o.is_empty() => Ok(()),
        _ => Err(Error::invalid(format!(
            "Invalid input for field/attribute {name}. Value: {v}. {v} is not of type 'null'"
        ))),
    }
}

fn parse_length(v: Option<Value>) -> Result<Option<u32>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(-1) => Ok(None),
            Some(x) if x >= 0 => Ok(Some(x as u32)),
            _ => Err(Error::invalid(format!(
                "Invalid input for field/attribute length. Value: {n}."
            ))),
        },
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(x) if x >= 0 => Ok(Some(x as u32)),
            _ => Err(Error::invalid(format!(
                "Invalid input for field/attribute length. Value: {s}."
            ))),
        },
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field/attribute length. Value: {other}."
        ))),
    }
}

async fn action(
    api: Api,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ComputeResult {
    let id = server_id(&id)?;
    let v = api.v;
    if body.len() != 1 {
        return Err(Error::invalid(
            "Malformed request body: an action body has exactly one key, the action name.",
        )
        .into());
    }
    let Some((name, arg)) = body.into_iter().next() else {
        return Err(Error::invalid("Malformed request body").into());
    };
    let c = api.control();
    let ctx = &api.ctx;
    let run = |a: ServerAction| async move { c.server_action(ctx, id, a).await };
    match name.as_str() {
        "reboot" => {
            let b: RebootBody = from_value(arg)?;
            let hard = match b.kind.as_str() {
                "HARD" | "Hard" | "hard" => true,
                "SOFT" | "Soft" | "soft" => false,
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid input for field/attribute type. Value: {other}. '{other}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
                    ))
                    .into())
                }
            };
            run(ServerAction::Reboot { hard }).await?;
            Ok(accepted())
        }
        "os-start" | "os-stop" | "pause" | "unpause" | "suspend" | "resume" | "confirmResize"
        | "revertResize" | "unlock" | "forceDelete" | "restore" => {
            no_body(&name, &arg)?;
            let a = match name.as_str() {
                "os-start" => ServerAction::Start,
                "os-stop" => ServerAction::Stop,
                "pause" => ServerAction::Pause,
                "unpause" => ServerAction::Unpause,
                "suspend" => ServerAction::Suspend,
                "resume" => ServerAction::Resume,
                "confirmResize" => ServerAction::ConfirmResize,
                "revertResize" => ServerAction::RevertResize,
                "unlock" => ServerAction::Unlock,
                "forceDelete" => ServerAction::ForceDelete,
                _ => ServerAction::Restore,
            };
            run(a).await?;
            // Nova answers confirmResize with 204.
            Ok(if name == "confirmResize" {
                StatusCode::NO_CONTENT.into_response()
            } else {
                accepted()
            })
        }
        "lock" => {
            let reason = match arg {
                Value::Null => None,
                other => {
                    let b: LockBody = from_value(other)?;
                    if b.locked_reason.is_some() && !v.at_least(73) {
                        return Err(Error::invalid("Invalid input for field/attribute lock. Additional properties are not allowed ('locked_reason' was unexpected)").into());
                    }
                    if b.locked_reason
                        .as_ref()
                        .is_some_and(|r| r.chars().count() > 255)
                    {
                        return Err(Error::invalid(
                            "Invalid input for field/attribute locked_reason. Value is too long",
                        )
                        .into());
                    }
                    b.locked_reason
                }
            };
            run(ServerAction::Lock { reason }).await?;
            Ok(accepted())
        }
        "resize" => {
            let b: ResizeBody = from_value(arg)?;
            run(ServerAction::Resize {
                flavor_id: FlavorId::from(id_from_href(&b.flavor_ref.0)),
            })
            .await?;
            Ok(accepted())
        }
        "rebuild" => {
            let obj = arg.as_object().cloned().unwrap_or_default();
            for (key, min, max) in [
                ("description", 19, u16::MAX),
                ("key_name", 54, u16::MAX),
                ("user_data", 57, u16::MAX),
                ("trusted_image_certificates", 63, u16::MAX),
                ("hostname", 90, u16::MAX),
                ("personality", 1, 56),
            ] {
                if obj.contains_key(key)
                    && !(v.at_least(min) && v <= super::microversion::Version::new(2, max))
                {
                    return Err(Error::invalid(format!(
                        "Invalid input for field/attribute rebuild. Additional properties are not allowed ('{key}' was unexpected)"
                    ))
                    .into());
                }
            }
            let b: RebuildBody = from_value(Value::Object(obj))?;
            if let Some(h) = &b.hostname {
                super::servers::validate_hostname(v, h)?;
            }
            let image: ImageId = id_from_href(&b.image_ref).parse().map_err(|_| {
                Error::invalid(format!(
                    "Invalid input for field/attribute imageRef. Value: {0}. '{0}' is not a 'uuid'",
                    b.image_ref
                ))
            })?;
            let _ = (
                b.preserve_ephemeral,
                b.disk_config,
                b.trusted_image_certificates,
            );
            let rb = Rebuild {
                image_id: image,
                name: b.name,
                metadata: b.metadata,
                personality: b.personality.map(|p| {
                    p.into_iter()
                        .map(|f| Personality {
                            path: f.path,
                            contents: f.contents,
                        })
                        .collect()
                }),
                admin_pass: b.admin_pass,
                description: b.description,
                key_name: b.key_name,
                user_data: b.user_data,
                hostname: b.hostname,
            };
            let ActionOutcome::Accepted { server, admin_pass } =
                run(ServerAction::Rebuild(Box::new(rb))).await?
            else {
                return Err(Error::internal("rebuild returned no server").into());
            };
            let opts = if v.at_least(75) {
                ShowOpts::SHOW
            } else {
                ShowOpts::SHORT
            };
            let resp = server_response(&api, &server, opts, StatusCode::ACCEPTED).await;
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
            let mut val: Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::internal(e.to_string()))?;
            if let Some(p) = admin_pass {
                val["server"]["adminPass"] = json!(p);
            }
            Ok((parts.status, axum::Json(val)).into_response())
        }
        "createImage" => {
            let b: CreateImageBody = from_value(arg)?;
            let out = run(ServerAction::CreateImage {
                name: b.name,
                metadata: b.metadata.unwrap_or_default(),
            })
            .await?;
            let ActionOutcome::Image { image_id } = out else {
                return Err(Error::internal("createImage returned no image").into());
            };
            if v.at_least(45) {
                Ok(crate::common::json(
                    StatusCode::ACCEPTED,
                    json!({"image_id": image_id.to_string()}),
                ))
            } else {
                let mut resp = accepted();
                let loc = format!("{}/image/images/{image_id}", api.state.public_url());
                if let Ok(h) = HeaderValue::from_str(&loc) {
                    resp.headers_mut().insert("location", h);
                }
                Ok(resp)
            }
        }
        "os-getConsoleOutput" => {
            let b: ConsoleBody = match arg {
                Value::Null => ConsoleBody { length: None },
                other => from_value(other)?,
            };
            let output = c
                .server_console_output(ctx, id, parse_length(b.length)?)
                .await?;
            Ok(crate::common::json(
                StatusCode::OK,
                json!({"output": output}),
            ))
        }
        "changePassword" => {
            let b: PasswordBody = from_value(arg)?;
            run(ServerAction::ChangePassword {
                admin_pass: b.admin_pass,
            })
            .await?;
            Ok(accepted())
        }
        "os-resetState" => {
            let b: ResetStateBody = from_value(arg)?;
            let state = match b.state.as_str() {
                "active" => VmState::Active,
                "error" => VmState::Error,
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid input for field/attribute state. Value: {other}. '{other}' is not one of ['active', 'error']"
                    ))
                    .into())
                }
            };
            run(ServerAction::ResetState { state }).await?;
            Ok(accepted())
        }
        "os-getVNCConsole" => {
            if v.at_least(6) {
                return Err(Error::not_found("There is no such action: os-getVNCConsole").into());
            }
            let b: VncBody = from_value(arg)?;
            if !matches!(b.kind.as_str(), "novnc" | "xvpvnc") {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute type. Value: {}.",
                    b.kind
                ))
                .into());
            }
            c.server_vnc_console(ctx, id).await?;
            let url = super::server_extras::console_url(&api, id);
            Ok(crate::common::json(
                StatusCode::OK,
                json!({"console": {"type": b.kind, "url": url}}),
            ))
        }
        other if UNSUPPORTED.contains(&other) => Err(Error::NotImplemented(format!(
            "The {other} action is not implemented by Nimbus."
        ))
        .into()),
        other => Err(Error::invalid(format!("There is no such action: {other}")).into()),
    }
}
