"""simxen.tpm"""
