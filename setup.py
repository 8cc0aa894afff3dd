"""Package layout; everything else (metadata, dependencies, entry points) is in setup.cfg.

The model-card templates live at the top of the repository in `hub_cards/` and ship inside the package as
`modeling_cascade/hub_cards/`, where `modeling_cascade.modelcard.card_template_path` finds them in an install.
"""

from setuptools import find_packages, setup


setup(
    packages=[*find_packages(include=["modeling_cascade", "modeling_cascade.*"]), "modeling_cascade.hub_cards"],
    package_dir={"modeling_cascade.hub_cards": "hub_cards"},
    package_data={"modeling_cascade.hub_cards": ["*.md"]},
)
