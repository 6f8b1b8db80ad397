"""textseg.model"""
