"""textseg.strategies"""
