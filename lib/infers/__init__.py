"""textseg.infers"""
