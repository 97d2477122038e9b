"""simxen.domains"""
