//! The `clouds.yaml` that lets OpenStack clients talk to this Nimbus at once.
//!
//! Written to `<data_dir>/clouds.yaml` (mode 0600: it holds the admin password) and, when
//! the current directory has no clouds.yaml of someone else's, to `./clouds.yaml` too
//! (OpenStack clients look in the current directory first).

use anyhow::Context as _;
use std::path::Path;

const MARKER: &str = "# Written by `nimbus serve`";

pub fn render(public_url: &str, password: &str, project: &str) -> String {
    format!(
        "{MARKER}: the admin credentials of this Nimbus.\n\
         clouds:\n  nimbus:\n    auth:\n      auth_url: {public_url}/identity/v3\n      \
         username: admin\n      password: \"{password}\"\n      project_name: {project}\n      \
         user_domain_name: Default\n      project_domain_name: Default\n    \
         region_name: RegionOne\n    interface: public\n    identity_api_version: 3\n"
    )
}

fn write_private(path: &Path, body: &str) -> anyhow::Result<()> {
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

pub fn write(
    data_dir: &Path,
    public_url: &str,
    password: &str,
    project: &str,
) -> anyhow::Result<()> {
    let body = render(public_url, password, project);
    write_private(&data_dir.join("clouds.yaml"), &body)?;
    let here = Path::new("clouds.yaml");
    let ours = match std::fs::read_to_string(here) {
        Ok(existing) => existing.starts_with(MARKER),
        Err(_) => true,
    };
    if ours {
        write_private(here, &body)?;
    } else {
        tracing::warn!(
            "./clouds.yaml belongs to someone else; use OS_CLIENT_CONFIG_FILE={}",
            data_dir.join("clouds.yaml").display()
        );
    }
    Ok(())
}
