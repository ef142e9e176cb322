"""Agents made by agent genesis (autarky/selfmod/genesis.py): their modules live in their version
repositories and reach a work directory from there; none ships in this package."""
