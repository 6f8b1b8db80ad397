"""textseg.data"""
