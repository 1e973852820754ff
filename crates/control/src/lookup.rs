//! Finding resources by name, for the dialects that address them by name (Alliance: servers,
//! flavors, images and networks by name; ids work too).
//!
//! These return every visible match, not one: what an ambiguous name means (a 409 listing
//! the candidates, in Alliance) is the dialect's decision, and it needs the candidates to
//! say so. Visibility is the caller's, exactly as the by-id getters apply it.

use crate::Control;
use crate::flavors::FlavorListQuery;
use crate::images::{ImageListFilter, ImageListQuery};
use crate::servers::ServerListQuery;
use nimbus_model::Result;
use nimbus_model::flavor::Flavor;
use nimbus_model::identity::Context;
use nimbus_model::image::Image;
use nimbus_model::network::Network;
use nimbus_model::server::{Server, ServerFilter, ServerPage};

impl Control {
    /// The caller's project's servers whose name is exactly `name` (deleted ones excluded).
    /// Admins too see only their own project's: a name is meaningful within a project.
    pub async fn servers_named(&self, ctx: &Context, name: &str) -> Result<Vec<Server>> {
        let q = ServerListQuery {
            filter: ServerFilter {
                name_regex: Some(format!("^{}$", regex::escape(name))),
                ..ServerFilter::default()
            },
            page: ServerPage::default(),
            all_tenants: false,
        };
        self.servers_list(ctx, q).await
    }

    /// Flavors the caller may boot whose name is exactly `name`.
    pub async fn flavors_named(&self, ctx: &Context, name: &str) -> Result<Vec<Flavor>> {
        let q = FlavorListQuery {
            name: Some(name.to_owned()),
            ..FlavorListQuery::default()
        };
        self.flavors_list(ctx, q).await
    }

    /// Images the caller's Glance listing shows whose name is exactly `name`.
    pub async fn images_named(&self, ctx: &Context, name: &str) -> Result<Vec<Image>> {
        let q = ImageListQuery {
            filter: ImageListFilter {
                name: Some(vec![name.to_owned()]),
                ..ImageListFilter::default()
            },
            ..ImageListQuery::default()
        };
        self.images_list(ctx, q).await
    }

    /// Networks visible to the caller (their project's and the shared public one) whose
    /// name is exactly `name`.
    pub async fn networks_named(&self, ctx: &Context, name: &str) -> Result<Vec<Network>> {
        Ok(self
            .networks_list(ctx)
            .await?
            .into_iter()
            .filter(|n| n.name == name && !n.deleted)
            .collect())
    }
}
