"""The installation's registered sites, and the site tag values of the feeds that map to each."""

from vitalops.sites.registry import Site, create_site, get_site, list_sites, require_site, site_for_tag

__all__ = ["Site", "create_site", "get_site", "list_sites", "require_site", "site_for_tag"]
