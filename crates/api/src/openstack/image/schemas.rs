//! `/v2/schemas/image` and `/v2/schemas/images`: the image JSON schema clients fetch
//! (python-glanceclient validates with it; `openstack image set` reads it).
//!
//! It is Glance's base schema (glance `api/v2/images.py` `get_base_properties`) with the
//! properties of Glance's default `schema-image.json`, minus the long `locations` item
//! schema (Nimbus never shows locations) — see docs/dialects/image.md.

use crate::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use nimbus_control::images::{CONTAINER_FORMATS, DISK_FORMATS};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/image/v2/schemas/image", get(image))
        .route("/image/v2/schemas/images", get(images))
}

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

fn enum_with_null(values: &[&str]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(values.iter().map(|s| json!(s)));
    Value::Array(v)
}

/// The image schema (`PermissiveSchema('image', ...).raw()`).
pub fn image_schema() -> Value {
    json!({
        "name": "image",
        "properties": {
            "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
            "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
            "status": {"type": "string", "readOnly": true, "description": "Status of the image",
                "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "description": "Scope of image accessibility",
                "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": {"type": ["null", "string"], "readOnly": true, "description": "md5 hash of image contents.", "maxLength": 32},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "description": "Algorithm to calculate the os_hash_value", "maxLength": 64},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo", "maxLength": 128},
            "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
            "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "description": "Format of the container", "enum": enum_with_null(CONTAINER_FORMATS)},
            "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": enum_with_null(DISK_FORMATS)},
            "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "description": "List of strings related to the image", "items": {"type": "string", "maxLength": 255}},
            "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "self": {"type": "string", "readOnly": true, "description": "An image self url"},
            "file": {"type": "string", "readOnly": true, "description": "An image file url"},
            "stores": {"type": "string", "readOnly": true, "description": "Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers."},
            "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
            "locations": {"type": "array", "items": {"type": "object", "properties": {"url": {"type": "string", "maxLength": 255}, "metadata": {"type": "object"}}, "required": ["url", "metadata"]},
                "description": "A set of URLs to access the image file kept in external store"},
            "kernel_id": {"type": ["null", "string"], "pattern": UUID_PATTERN, "description": "ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.", "is_base": false},
            "ramdisk_id": {"type": ["null", "string"], "pattern": UUID_PATTERN, "description": "ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.", "is_base": false},
            "instance_uuid": {"type": "string", "description": "Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)", "is_base": false},
            "architecture": {"description": "Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html", "type": "string", "is_base": false},
            "os_distro": {"description": "Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html", "type": "string", "is_base": false},
            "os_version": {"description": "Operating system version as specified by the distributor.", "type": "string", "is_base": false},
            "description": {"description": "A human-readable string describing this image.", "type": "string", "is_base": false},
            "cinder_encryption_key_id": {"description": "Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image", "type": "string", "is_base": false},
            "cinder_encryption_key_deletion_policy": {"description": "States the condition under which the Image Service will delete the object associated with the 'cinder_encryption_key_id' image property.  If this property is missing, the Image Service will take no action", "type": "string", "enum": ["on_image_deletion", "do_not_delete"], "is_base": false}
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The collection schema (`CollectionSchema('images', image).raw()`).
pub fn images_schema() -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

async fn image() -> Response {
    crate::common::json(StatusCode::OK, image_schema())
}

async fn images() -> Response {
    crate::common::json(StatusCode::OK, images_schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_every_view_field() {
        let s = image_schema();
        for f in [
            "id",
            "name",
            "status",
            "visibility",
            "protected",
            "os_hidden",
            "owner",
            "disk_format",
            "container_format",
            "size",
            "virtual_size",
            "checksum",
            "os_hash_algo",
            "os_hash_value",
            "min_disk",
            "min_ram",
            "tags",
            "created_at",
            "updated_at",
            "self",
            "file",
            "schema",
        ] {
            assert!(s["properties"].get(f).is_some(), "{f}");
        }
        assert_eq!(s["properties"]["disk_format"]["enum"][0], Value::Null);
        assert_eq!(
            images_schema()["properties"]["images"]["items"]["name"],
            "image"
        );
    }
}
