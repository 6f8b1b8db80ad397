"""textseg.trainers"""
